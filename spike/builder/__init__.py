"""Stage 1, build: a Nengo network into a nengo model divided into actors.

nengo's own builder makes every operator and signal (`spike.builder.model` records
which object made each); Spike then splits large ensembles (`split`), divides
actors held together by passthrough Nodes (`passthrough`) and groups operators into
actors (`partition`). `pipeline.prepare` runs them in order.
"""
