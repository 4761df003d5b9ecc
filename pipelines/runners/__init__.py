"""Backends of the dataflow API (``pipelines.flow``): ``local``, ``beam``, ``dask``.

Each is a thin adapter with identical output: the build graph (``pipelines.build``) owns every
decision; a backend only decides where the per-element functions run and how keys are shuffled.
Pick one with ``pipelines.flow.make_flow(name, workers, **options)``.
"""
