"""How the workers of a `tf.distribute` cluster act as one: the chief decides, every worker acts.

`workers` holds how the chief's decision reaches every worker (`on_chief`); `choreography`
the order in which a cluster's workers save and restore. What a cluster offers (`Peers`) is
declared beside `Backend` in `ckptkit.backends.base`, and TensorFlow's side of it is in
`ckptkit.backends.cluster`.
"""
