"""How bytes reach a checkpoint directory, and how ckptkit knows they did.

`fs` (file primitives, local, gfile or fsspec; `routes` decides which a URL takes, and
`fsspec_files` is the fsspec side), `tiers` (the local staging and cache of a remote
directory), `layout` (the state file, listing, deletion, leftovers; `state_proto` is the state
file's schema), `manifest` (the commit record), `directory_view` (what a manager knows of its
directory), `lock` and `lease` (one writer, local or remote) and `writer` (a manager's claim
on its directory).
"""
