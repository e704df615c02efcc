#!/usr/bin/env bash
# Seeds as one ensemble, leave one subject out: for each held-out real CT, score the `full` step's
# best checkpoint of each seed (without and with test-time mirroring) and of all of them as one
# ensemble (`ckpt_path=[a,b,...]`, no mirroring: two seeds make as many network passes as one
# mirrored network). Needs, for each seed S of SEEDS (default "1 2"), the runs of
#   SEED=S RUN_ROOT=logs/ens_seedS STEPS=full bash experiments/real_anatomy/loso.sh
# then: bash experiments/real_anatomy/ensemble.sh   # -> logs/ensemble_eval/, a table on stdout
set -euo pipefail
SEEDS=${SEEDS:-"1 2"}
OUT=${OUT:-logs/ensemble_eval}
ALL="lumbar_ct_3mm verse006 verse007 tptbox"
mkdir -p "$OUT"
for held in verse006 verse007 tptbox; do
  split=$(for s in $ALL; do [ "$s" = "$held" ] && echo -n "$s: test, " || echo -n "$s: train, "; done)
  split="{${split%, }}"
  specs=() members=()
  for seed in $SEEDS; do
    ckpt=$(ls logs/ens_seed$seed/full_$held/checkpoints/epoch_*.ckpt | tail -1)
    specs+=("seed$seed $ckpt false" "seed${seed}_mirrored $ckpt true") members+=("$ckpt")
  done
  specs+=("ensemble_$(echo $SEEDS | tr ' ' _) [$(IFS=,; echo "${members[*]}")] false")
  for spec in "${specs[@]}"; do
    read -r name ckpt mirror <<< "$spec"
    dir="$OUT/${held}_$name"
    [ "$(cat "$dir/scored" 2>/dev/null)" = "$ckpt $mirror" ] && continue  # these checkpoints, scored before
    python eval.py "ckpt_path=$ckpt" data=real "data.subjects.real.subjects.split=$split" split=test \
      mirror_lr=$mirror preview=false "output_dir=$dir" "hydra.run.dir=$dir" > "$dir.log" 2>&1 \
      || { echo "eval failed, see $dir.log" >&2; exit 1; }
    echo "$ckpt $mirror" > "$dir/scored"
  done
done
python - "$OUT" $SEEDS <<'PY'
import json, statistics, sys
from pathlib import Path
out, seeds = Path(sys.argv[1]), sys.argv[2:]
names = [f"seed{s}" for s in seeds] + [f"seed{s}_mirrored" for s in seeds] + ["ensemble_" + "_".join(seeds)]
rows = []
for held, levels in (("verse006", ["L4", "L5"]), ("verse007", ["L2", "L3"]), ("tptbox", ["L2", "L3", "L4"])):
    scores = {n: json.loads((out / f"{held}_{n}" / "metrics.json").read_text()) for n in names}
    rows += [(held, lv, [scores[n][f"eval/iou_{lv}"] for n in names]) for lv in levels]
print("| held out | level | " + " | ".join(names) + " |\n|---|---|" + "---|" * len(names))
for held, lv, v in rows:
    print(f"| {held} | {lv} | " + " | ".join(f"{x:.3f}" for x in v) + " |")
print("| mean | | " + " | ".join(f"**{statistics.mean(r[2][i] for r in rows):.3f}**" for i in range(len(names))) + " |")
PY
