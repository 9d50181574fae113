"""Placements: named recommendation slots (home row, product page, cart upsell) with merchandising rules.

A placement is stored in Postgres, cached per process under an epoch token in Redis (every write sets a
fresh one, so an edit applies at the next request), and applied after scoring to the ranked candidates.
"""
