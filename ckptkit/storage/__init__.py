"""How bytes reach a checkpoint directory, and how ckptkit knows they did.

`fs` (the file primitives' contract; `routes` decides which transport a path takes, and
`local_files`, `gfile_files` and `fsspec_files` keep the contract over one each), `tiers`
(the local staging and cache of a remote directory), `layout` (the state file, listing,
deletion, leftovers; `state_proto` is the state file's schema), `manifest` (the commit
record), `directory_view` (what a manager knows of its directory), `lock` and `lease` (one
writer, local or remote) and `writer` (a manager's claim on its directory).
"""
