#!/usr/bin/env python3
"""Queries an asdic scan dataset (asdic scan --dataset DIR) with Spark SQL (local mode) and
DuckDB, as a user would, and prints what each engine answered as one JSON line:

  {"spark": ANSWERS, "duckdb": ANSWERS, "spark_s": S, "duckdb_s": S}

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
       regexp_extract(target, '^([0-9]+[.][0-9]+[.][0-9]+)[.]', 1) AS net24,
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


os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
sp, sp_s = spark()
dk, dk_s = duck()
print(json.dumps({"spark": sp, "duckdb": dk, "spark_s": round(sp_s, 3), "duckdb_s": round(dk_s, 3)}))
