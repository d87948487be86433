"""The word-count benchmark through PySpark Structured Streaming: file source,
split and explode, groupBy(word).count(), complete mode, the `noop` sink,
Trigger.AvailableNow, local[2]. Prints the query's processing time (the JVM's
start-up excluded) as JSON."""

import json
import os
import sys
import tempfile
import time

from pyspark.sql import SparkSession
from pyspark.sql.functions import col, explode, split


def main():
    corpus_dir, words = sys.argv[1], int(sys.argv[2])
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("wordcount-bench")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    lines = spark.readStream.format("text").load(corpus_dir)
    counts = lines.select(explode(split(col("value"), " ")).alias("word")).groupBy("word").count()
    with tempfile.TemporaryDirectory() as checkpoint:
        started = time.time()
        query = (
            counts.writeStream.outputMode("complete")
            .format("noop")
            .option("checkpointLocation", os.path.join(checkpoint, "cp"))
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()
        elapsed = time.time() - started
    spark.stop()
    print(json.dumps({"seconds": elapsed, "words_per_second": words / elapsed}))


if __name__ == "__main__":
    main()
