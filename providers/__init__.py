"""Upstream samplers: the big model the search draws chunks from."""
