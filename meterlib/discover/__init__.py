"""Finding new meter types among photos the model does not know (``meterlib discover``, notebook 05).

- ``clustering``: the photos' features clustered together with the known types' training features
  (PCA, then HDBSCAN), each cluster named known or new; the settings, chosen by treating known
  types as if they were new (``choose_settings``), and how a clustering is scored against the truth.
- ``inputs``: which photos to judge (files, folders, the ``unseen_type`` rows of a predict CSV)
  and their features, with the photos that cannot be read listed apart.
- ``finder``: the one call from photos and a model to its clusters (``find_new_types``).
- ``outputs``: what a person reviews: members.csv, new_types.csv, noise.csv and a contact sheet per
  new cluster, written atomically, never over files meterlib did not write.
"""
