"""`python -m spine_lightning.report DIR`: the ablation report of a sweep (see evaluation/report.py)."""

from spine_lightning.evaluation.report import main

if __name__ == "__main__":
    main()
