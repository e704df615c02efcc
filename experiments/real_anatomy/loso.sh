#!/usr/bin/env bash
# Leave-one-subject-out over the real CTs with expert masks: each run tests on one of them (and on
# nothing else: no phantom test subjects), never having trained on it or on synthetic CT drawn on
# its mask. The study's 2 mm recipe keeps one run to minutes on 2 CPU cores.
#   STEPS="phantoms full" SUBJECTS="verse006 verse007 tptbox" bash experiments/real_anatomy/loso.sh
#   python experiments/real_anatomy/summarize.py logs/real_anatomy
# SEED (default 1) and RUN_ROOT (default logs/real_anatomy) repeat the study with another seed.
set -euo pipefail
SEED=${SEED:-1}
RUN_ROOT=${RUN_ROOT:-logs/real_anatomy}
STEPS=${STEPS:-"phantoms augmented synthetic full"}
SUBJECTS=${SUBJECTS:-"verse006 verse007 tptbox"}
ALL="lumbar_ct_3mm verse006 verse007 tptbox"
for held in $SUBJECTS; do
  split=$(for s in $ALL; do [ "$s" = "$held" ] && echo -n "$s: test, " || echo -n "$s: train, "; done)
  split="{${split%, }}"
  for step in $STEPS; do
    case $step in  # each step adds one thing to the one before
      phantoms)  args=(augmentation=none data.subjects.synthetic=null "+data.subjects.real.subjects.names=[$held]"
                       "data.subjects.real.subjects.split={$held: test}") ;;
      augmented) args=(data.subjects.synthetic=null "+data.subjects.real.subjects.names=[$held]"
                       "data.subjects.real.subjects.split={$held: test}") ;;
      synthetic) args=("+data.subjects.real.subjects.names=[$held]" "data.subjects.real.subjects.split={$held: test}"
                       "data.subjects.synthetic.subjects.exclude=[sub-$held]") ;;
      full)      args=("data.subjects.real.subjects.split=$split" "data.subjects.synthetic.subjects.exclude=[sub-$held]") ;;
      *) echo "unknown step $step" >&2; exit 2 ;;
    esac
    python train.py +recipe=study_cpu +experiment=edge seed=$SEED data.outside_scan=repeat test_perturbations=null \
      data.subjects.phantom.subjects.num_test=0 logger=csv '~callbacks.rich_progress_bar' \
      "${args[@]}" "hydra.run.dir=$RUN_ROOT/${step}_${held}"
  done
done
