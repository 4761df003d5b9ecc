"""Embeddings and near-duplicate search (used by the dedup stage, ``pipelines.dedup``).

In: decoded records of one modality (report text; image, ECG or volume payloads).
Out, from :func:`workers.embed.embedders.make_embedder`: an ``(n, dim)`` float32 array of
L2-normalised vectors (the image thumbnail: float64; the dedup stage stores every vector as
float16), ``dim`` fixed per embedder: text 384 (all-MiniLM-L6-v2, offline);
the weight-free thumbnails image 2048 (32 × 32 grey thumbnail + its high-pass, standardised),
ECG 3000 (12 leads × 250 samples, 10 s at 25 Hz), volume 4096 (16 × 16 × 16, X, Y, Z); a
TorchScript checkpoint: its own output dimension, L2-normalised here. ``embedder_fingerprint`` names the
function for the cache key.

:func:`workers.embed.lsh.near_duplicate_pairs` takes such an ``(n, d)`` matrix of unit vectors
and a cosine threshold and returns the verified pairs ``(m, 2)`` int64 (``i < j``) with their
cosines ``(m,)``: random-hyperplane signatures, LSH banding sized for a target recall, exact
cosine verification (precision exact, recall the LSH probability); ``clusters`` turns pairs
into one component label per item, ``(n,)``.

Modules: ``embedders`` (the embedders and report-text normalisation), ``lsh`` (hashing, banding,
verification, brute-force ground truth).
"""
