"""The etlhelper recipe's ``transform_sensors``, as an indexer transform.

indexer hands a transform a list of documents (dicts with lower-cased column
names) and indexes the list it returns. Unlike the recipe, no
``datetime.now()``: a transform must give the same document for the same row
on every run, or reruns would not be idempotent.
"""


def transform_sensors(chunk: list[dict]) -> list[dict]:
    return [
        {
            "sample_code": row["code"],
            "description": row["description"],
            "metadata": {"source": "ORACLE_DB"},
        }
        for row in chunk
    ]
