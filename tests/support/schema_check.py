#!/usr/bin/env python3
"""Reads asdic result files with pyarrow, DuckDB and Spark (local mode), every record of
each, and prints what each engine saw as one JSON line:

  {FILE: {"pyarrow": SEEN, "duckdb": SEEN, "spark": SEEN}, ...}

where SEEN is
  types      [column, the engine's type name] pairs, in file order
  rows       records read (all of them, materialised)
  version    the file's asdic.schema_version (pyarrow and DuckDB; Spark has no reader of
             Parquet key-value metadata)
  mismatch   rows whose timestamp column (sent_time / time) is not its _ns column's
             microsecond, as the engine reads the timestamp (UTC)

Reads only the files named; sends nothing.

usage: schema_check.py FILE...
"""
import json
import os
import sys

FILES = sys.argv[1:]
PAIRS = [("sent_time", "sent_unix_ns"), ("time", "time_unix_ns")]


def pair_of(columns):
    columns = [c[0] if isinstance(c, list) else c for c in columns]
    for t, ns in PAIRS:
        if t in columns and ns in columns:
            return t, ns
    return None


def with_pyarrow(path):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    meta = pq.read_metadata(path).metadata or {}
    version = meta.get(b"asdic.schema_version")
    mismatch = 0
    pair = pair_of(t.column_names)
    if pair:
        micros = pc.cast(pc.cast(t[pair[0]], "timestamp[us]"), "int64")
        want = pc.divide(t[pair[1]], 1000)
        mismatch = sum(
            1
            for a, b in zip(micros.to_pylist(), want.to_pylist())
            if a is not None and b is not None and a != b
        )
    rows = len(t.to_pylist())
    return {
        "types": [[f.name, str(f.type)] for f in t.schema],
        "rows": rows,
        "version": version.decode() if version else None,
        "mismatch": mismatch,
    }


def with_duckdb(path):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    src = f"read_parquet('{path}')"
    types = [[r[0], r[1]] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
    rows = len(con.execute(f"SELECT * FROM {src}").fetchall())
    kv = con.execute(
        f"SELECT value FROM parquet_kv_metadata('{path}') WHERE key = 'asdic.schema_version'"
    ).fetchall()
    version = kv[0][0].decode() if kv else None
    mismatch = 0
    pair = pair_of(types)
    if pair:
        mismatch = con.execute(
            f"SELECT count(*) FROM {src} WHERE epoch_us({pair[0]}) != {pair[1]} // 1000"
        ).fetchone()[0]
    return {"types": types, "rows": rows, "version": version, "mismatch": mismatch}


def with_spark(spark, path):
    df = spark.read.parquet(path)
    types = [[f.name, f.dataType.simpleString()] for f in df.schema.fields]
    rows = len(df.collect())
    mismatch = 0
    pair = pair_of(types)
    if pair:
        df.createOrReplaceTempView("t")
        mismatch = spark.sql(
            f"SELECT count(*) FROM t WHERE unix_micros({pair[0]}) != div({pair[1]}, 1000)"
        ).collect()[0][0]
    return {"types": types, "rows": rows, "version": None, "mismatch": mismatch}


def main():
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[1]")
        .appName("asdic-schema")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    out = {}
    for f in FILES:
        out[f] = {
            "pyarrow": with_pyarrow(f),
            "duckdb": with_duckdb(f),
            "spark": with_spark(spark, f),
        }
    spark.stop()
    print(json.dumps(out))


main()
