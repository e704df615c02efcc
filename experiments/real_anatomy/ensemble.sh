#!/usr/bin/env bash
# Two seeds as one ensemble, leave one subject out: for each held-out real CT, score the `full` step's
# best checkpoint of seed 1 and of seed 2 (each without and with test-time mirroring) and of the two
# as one ensemble (`ckpt_path=[a,b]`, no mirroring: the same number of network passes as one mirrored
# network). Needs the runs of
#   SEED=1 RUN_ROOT=logs/ens_seed1 STEPS=full bash experiments/real_anatomy/loso.sh
#   SEED=2 RUN_ROOT=logs/ens_seed2 STEPS=full bash experiments/real_anatomy/loso.sh
# then: bash experiments/real_anatomy/ensemble.sh   # -> logs/ensemble_eval/, a table on stdout
set -euo pipefail
OUT=${OUT:-logs/ensemble_eval}
ALL="lumbar_ct_3mm verse006 verse007 tptbox"
for held in verse006 verse007 tptbox; do
  split=$(for s in $ALL; do [ "$s" = "$held" ] && echo -n "$s: test, " || echo -n "$s: train, "; done)
  split="{${split%, }}"
  a=$(ls logs/ens_seed1/full_$held/checkpoints/epoch_*.ckpt | tail -1)
  b=$(ls logs/ens_seed2/full_$held/checkpoints/epoch_*.ckpt | tail -1)
  for spec in "seed1 $a false" "seed2 $b false" "seed1_mirrored $a true" "seed2_mirrored $b true" "ensemble [$a,$b] false"; do
    read -r name ckpt mirror <<< "$spec"
    python eval.py "ckpt_path=$ckpt" data=real "data.subjects.real.subjects.split=$split" split=test \
      mirror_lr=$mirror preview=false "output_dir=$OUT/${held}_$name" "hydra.run.dir=$OUT/${held}_$name" > /dev/null 2>&1
  done
done
python - "$OUT" <<'PY'
import json, statistics, sys
from pathlib import Path
out, names = Path(sys.argv[1]), ["seed1", "seed2", "seed1_mirrored", "seed2_mirrored", "ensemble"]
rows = []
for held, levels in (("verse006", ["L4", "L5"]), ("verse007", ["L2", "L3"]), ("tptbox", ["L2", "L3", "L4"])):
    scores = {n: json.loads((out / f"{held}_{n}" / "metrics.json").read_text()) for n in names}
    rows += [(held, lv, [scores[n][f"eval/iou_{lv}"] for n in names]) for lv in levels]
print("| held out | level | " + " | ".join(names) + " |\n|---|---|" + "---|" * len(names))
for held, lv, v in rows:
    print(f"| {held} | {lv} | " + " | ".join(f"{x:.3f}" for x in v) + " |")
print("| mean | | " + " | ".join(f"**{statistics.mean(r[2][i] for r in rows):.3f}**" for i in range(len(names))) + " |")
PY
