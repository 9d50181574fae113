"""The rebuild on a Dask cluster: the same models as `app.worker.pipeline`, with no process holding the log.

Shoppers are split into contiguous shards of the users table's order. Each Dask worker loads its
shards straight from Postgres (one exported snapshot, so every shard sees the same instant) and keeps
them; everything that is a sum over shoppers (item-item products, popularity, evidence) is summed over
shards on the workers, everything per shopper (histories, scores, audiences, published records) stays
on the shard that holds the shopper. The driver (the `shopmind worker` process) chooses the models on a
user sample, as the in-process rebuild does on large shops, and sees only item-sized results.
"""
