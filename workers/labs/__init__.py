"""Laboratory values: table cells in, the ``labs_{i}`` sample members out (Symile-MIMIC).

In: lab values as text cells with their item id, unit and (shifted) time, gathered per sample
by the table join in ``pipelines.tables``; the train split's values per item.
Out, from :mod:`workers.labs.values`: the per-item empirical CDF of the train split
(``fit_cdf``: sorted float64 values and the mean train percentile), and per sample
``labs_members`` → ``labs_{i}.npy``, float32 of shape (3, n_items) with rows ``value`` (in the
item's unit, NaN when missing), ``percentile`` (in [0, 1] under the train CDF; a missing item
gets the item's mean train percentile, an item without train values 0.5) and ``missing``
(1.0 / 0.0), plus ``labs_{i}.json`` (item ids, names, units, times, missingness, the id of the
normalisation statistics).

Its own subpackage because labs are a modality of their own (a table, not a file decoder), used
driver-side by ``pipelines.tables`` like ``workers.volume.ct_metadata``.
"""
