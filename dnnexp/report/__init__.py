"""`dnnexp report`: compare the variants of a sweep (or any set of runs) over seeds.

- `collect`: find the run dirs (summary.json), read them, group runs differing only in seed.
- `stats`: mean, SD, t-intervals, paired/Welch t-tests, Holm adjustment (pure functions).
- `analysis`: one row of statistics per variant, compared with the baseline.
- `render`: the rich table, report.md, report.csv and report.json.
- `plots`: learning_curves.png and metric_<name>.png (matplotlib, Agg, imported lazily).
"""
