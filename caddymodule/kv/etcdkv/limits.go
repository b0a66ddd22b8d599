package etcdkv

// MaxTxnOps is the most operations one commit sends (Config.MaxTxnOps), for callers that
// split large work (kv.TxnOpsLimit).
func (db *DB) MaxTxnOps() int { return db.cfg.MaxTxnOps }
