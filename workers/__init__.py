"""HOW one item is transformed: decoders, de-identification, NLP, LLM, embeddings, hashing.

Workers are pure functions or small classes with ``setup()``/``__call__``. They never import
Beam, Dask, Airflow or ``pipelines``; they raise ``schemas.QuarantineError`` for bad input.
"""
