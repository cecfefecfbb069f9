"""How the workers of a `tf.distribute` cluster act as one: the chief decides, every worker acts.

`workers` holds the protocol between workers (`Peers`, `on_chief`); `choreography` the order in
which a cluster's workers save and restore. The TensorFlow side of a cluster is in
`ckptkit.backends.cluster`.
"""
