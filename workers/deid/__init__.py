"""Free-text de-identification, one responsibility per module (entry point: ``workers.text_deid``).

- ``spans``: candidate spans and their resolution;
- ``identifiers``: contact details, IDs, kept placeholders;
- ``dates``: dates shifted in their own format, clock times;
- ``ages``: ages over 89;
- ``locations``: addresses, cities, institutions;
- ``names``: person names (titles, labels, cues, credentials, dictionaries);
- ``model``: the statistical token model (ensemble member);
- ``clinical``: the clinical allow-list;
- ``lexicon``: dictionaries;
- ``detector``: the ensemble.
"""
