"""Several boxes, one partner account: the shared state in PostgreSQL (preview).

Each box keeps its own SQLite journal for the receive path; PostgreSQL holds only what the boxes
share: box leases, sellable numbers per box, v1 operations with global activation ids, sales,
and which box pushes what. :class:`muxd.cluster.store.ClusterStore` is the way in;
:mod:`muxd.cluster.notify` has a box's dedicated connections (LISTEN, the v2 publisher lock).
Importing this package imports no database driver.
"""
