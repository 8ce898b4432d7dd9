#!/usr/bin/env python3
"""Queries an asdic scan dataset (asdic scan --dataset DIR) with Spark SQL (local mode),
DuckDB, DataFusion (SQL) and pyarrow (datasets and compute, no SQL), as a user would, each
discovering the Hive partitions on its own, and prints what each engine answered as one JSON
line:

  {"spark": ANSWERS, "duckdb": ANSWERS, "datafusion": ANSWERS, "pyarrow": ANSWERS,
   "spark_s": S, "duckdb_s": S, "datafusion_s": S, "pyarrow_s": S}

where ANSWERS maps each run to
  live      echo-replying targets (count)
  rejected  targets answered with an ICMP error (sorted list)
  loss      per /24: [targets, silent targets]
  shards    per shard: rows

The queries are the README's. Reads only DIR; sends nothing.

usage: dataset_query.py DIR
"""
import json
import os
import sys
import time

DIR = sys.argv[1]

# Loss per /24 across every shard of a run: silent targets over targets probed.
LOSS_SQL = """
SELECT run,
       regexp_replace(target, '[.][0-9]+$', '') AS net24,
       count(*) AS targets,
       sum(CASE WHEN outcome = 'timeout' THEN 1 ELSE 0 END) AS silent
FROM scan
WHERE outcome IN ('reply', 'error', 'timeout', 'send_failed')
GROUP BY run, net24
ORDER BY run, net24
"""
LIVE_SQL = "SELECT run, count(DISTINCT target) FROM scan WHERE outcome = 'reply' GROUP BY run"
REJECTED_SQL = "SELECT run, target FROM scan WHERE outcome = 'error' ORDER BY run, target"
SHARDS_SQL = "SELECT run, shard, count(*) FROM scan GROUP BY run, shard ORDER BY run, shard"


def answers(rows_of):
    out = {}
    for run, n in rows_of(LIVE_SQL):
        out.setdefault(run, {})["live"] = int(n)
    for run, target in rows_of(REJECTED_SQL):
        out.setdefault(run, {}).setdefault("rejected", []).append(target)
    for run, net24, targets, silent in rows_of(LOSS_SQL):
        out.setdefault(run, {}).setdefault("loss", {})[net24] = [int(targets), int(silent)]
    for run, shard, n in rows_of(SHARDS_SQL):
        out.setdefault(run, {}).setdefault("shards", {})[str(shard)] = int(n)
    return out


def spark():
    from pyspark.sql import SparkSession

    s = (
        SparkSession.builder.master("local[2]")
        .appName("asdic-dataset")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    s.sparkContext.setLogLevel("ERROR")
    t = time.monotonic()
    s.read.parquet(DIR).createOrReplaceTempView("scan")
    got = answers(lambda q: [tuple(r) for r in s.sql(q).collect()])
    secs = time.monotonic() - t
    s.stop()
    return got, secs


def duck():
    import duckdb

    con = duckdb.connect()
    t = time.monotonic()
    con.execute(
        f"CREATE VIEW scan AS SELECT * FROM "
        f"read_parquet('{DIR}/**/*.parquet', hive_partitioning = true)"
    )
    got = answers(lambda q: con.execute(q).fetchall())
    return got, time.monotonic() - t


def fusion():
    import datafusion

    ctx = datafusion.SessionContext()
    t = time.monotonic()
    ctx.sql(f"CREATE EXTERNAL TABLE scan STORED AS PARQUET LOCATION '{DIR}/'")
    got = answers(lambda q: [tuple(r.values()) for r in ctx.sql(q).to_pylist()])
    return got, time.monotonic() - t


def arrow():
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    t = time.monotonic()
    scan = ds.dataset(DIR, format="parquet", partitioning="hive").to_table(
        columns=["run", "shard", "target", "outcome"]
    )
    out = {}
    replies = scan.filter(pc.field("outcome") == "reply")
    for r in replies.group_by("run").aggregate([("target", "count_distinct")]).to_pylist():
        out.setdefault(r["run"], {})["live"] = r["target_count_distinct"]
    errors = scan.filter(pc.field("outcome") == "error").sort_by([("run", "ascending"), ("target", "ascending")])
    for r in errors.select(["run", "target"]).to_pylist():
        out.setdefault(r["run"], {}).setdefault("rejected", []).append(r["target"])
    probed = scan.filter(pc.field("outcome").isin(["reply", "error", "timeout", "send_failed"]))
    probed = probed.append_column(
        "net24", pc.replace_substring_regex(probed["target"], pattern=r"[.][0-9]+$", replacement="")
    ).append_column("silent", pc.cast(pc.equal(probed["outcome"], "timeout"), "int64"))
    per24 = probed.group_by(["run", "net24"]).aggregate([("target", "count"), ("silent", "sum")])
    for r in per24.sort_by([("run", "ascending"), ("net24", "ascending")]).to_pylist():
        out.setdefault(r["run"], {}).setdefault("loss", {})[r["net24"]] = [r["target_count"], r["silent_sum"]]
    per_shard = scan.group_by(["run", "shard"]).aggregate([("target", "count")])
    for r in per_shard.sort_by([("run", "ascending"), ("shard", "ascending")]).to_pylist():
        out.setdefault(r["run"], {}).setdefault("shards", {})[str(r["shard"])] = r["target_count"]
    return out, time.monotonic() - t


os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
sp, sp_s = spark()
dk, dk_s = duck()
df, df_s = fusion()
pa, pa_s = arrow()
print(
    json.dumps(
        {
            "spark": sp,
            "duckdb": dk,
            "datafusion": df,
            "pyarrow": pa,
            "spark_s": round(sp_s, 3),
            "duckdb_s": round(dk_s, 3),
            "datafusion_s": round(df_s, 3),
            "pyarrow_s": round(pa_s, 3),
        }
    )
)
