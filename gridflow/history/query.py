"""SQL over the history with DuckDB: one view per kept topic (``features``, ``profiles``, ``assignments``,
``centroids``, ``alerts``, ``load_forecasts``, ``schedules``, ``recommendations``), with the records' fields and the ``_day`` (the partition:
the UTC day the record was written), ``_partition``, ``_offset``, ``_key`` and ``_kafka_ms`` columns.

    gridflow history query "SELECT type, count(*) FROM alerts GROUP BY type"

A topic with no file yet has no view (the error names the views there are). Object-store roots need
DuckDB's ``httpfs`` extension and its credentials (``CREATE SECRET``), see the README.
"""

from __future__ import annotations

from gridflow.history.writer import History, history_root


def connect(settings, root: str | None = None):
    """A DuckDB connection with a view per kept topic that has files; returns ``(connection, views)``."""
    import duckdb

    root = root or history_root(settings)
    history = History(root)
    connection = duckdb.connect()
    views = []
    for name in settings.history.topics:
        if not history.files(name):
            continue
        pattern = f"{root.rstrip('/')}/{name}/_day=*/part-*.parquet".replace("'", "''")
        connection.execute(
            f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{pattern}', hive_partitioning = true, "
            "union_by_name = true)"
        )
        views.append(name)
    return connection, views


def query(settings, sql: str, root: str | None = None) -> tuple[list[str], list[tuple]]:
    """``(column names, rows)`` of ``sql`` over the history."""
    import duckdb

    connection, views = connect(settings, root)
    try:
        result = connection.execute(sql)
    except duckdb.CatalogException as error:
        raise ValueError(f"{error}; the history has the views: {', '.join(views) or 'none yet'}") from None
    except duckdb.Error as error:
        raise ValueError(str(error)) from None
    columns = [d[0] for d in result.description or []]
    return columns, result.fetchall()
