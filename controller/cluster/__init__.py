"""Controller HA: leader election on etcd with a lease, terms and guarded writes (issue 14)."""
