"""Upstream: the Onlinesim v2 client, the numbers publisher and the SMS shipper."""
