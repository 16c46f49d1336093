"""The pipeline's outputs as a queryable history: Parquet files per topic and day (:mod:`.writer`), SQL over
them with DuckDB (:mod:`.query`)."""
