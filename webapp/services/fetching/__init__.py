"""Fetching: the driver of a fetch and what it needs: leases, schedule, run log, store, refetch.

A fetch takes the mailbox's lease, stores the raw bytes of each batch with the
cursor (store first), then hands the stored rows to ingest. Nothing here files a case.
"""
