"""The contrastive trainer of medcorpus: WebDataset loader, encoders, CLIP and Symile losses,
training loop (DDP, AMP, accumulation, resumable checkpoints) and evaluation.

Depends on :mod:`schemas` only (the sample/shard contract), never on ``pipelines`` or ``workers``.
Heavy imports (torch) happen when a submodule is imported, not here.
"""
