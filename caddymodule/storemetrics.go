package caddymodule

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scimgate/scimgate/caddymodule/kv/etcdkv"
)

// etcdCollector reports, when scraped, what this process's etcd stores did since they were
// opened: commits, commits lost to another gateway (sent, and refused by etcd's compare, or
// not sent because the cache already showed the other commit) and linearizable reads of the
// fleet's head (one per batch of reads, or one per read_staleness with it set). Lost commits
// are the price of gateways writing at once; the reads, of linearizable reads.
type etcdCollector struct{}

// etcdStores holds this process's open etcd stores (*etcdkv.DB), for etcdCollector: kept
// apart from the store pool, whose entries a scrape would wait for while one opens.
var etcdStores sync.Map

var (
	etcdCommitsDesc   = prometheus.NewDesc("scimgate_store_etcd_commits_total", "Transactions this gateway committed to etcd, by key prefix.", []string{"prefix"}, nil)
	etcdConflictsDesc = prometheus.NewDesc("scimgate_store_etcd_conflicts_total", "Transactions that found another gateway's commit first and ran again, by key prefix and how: sent (etcd refused it) or seen (not sent: the cache showed the other commit).", []string{"prefix", "how"}, nil)
	etcdReadsDesc     = prometheus.NewDesc("scimgate_store_etcd_quorum_reads_total", "Linearizable reads of the fleet's head sent to etcd (each shared by the reads waiting for it), by key prefix.", []string{"prefix"}, nil)
)

func (etcdCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{etcdCommitsDesc, etcdConflictsDesc, etcdReadsDesc} {
		ch <- d
	}
}

func (etcdCollector) Collect(ch chan<- prometheus.Metric) {
	etcdStores.Range(func(k, _ any) bool {
		db := k.(*etcdkv.DB)
		s, prefix := db.Stats(), db.Prefix()
		ch <- prometheus.MustNewConstMetric(etcdCommitsDesc, prometheus.CounterValue, float64(s.Commits), prefix)
		ch <- prometheus.MustNewConstMetric(etcdConflictsDesc, prometheus.CounterValue, float64(s.Lost), prefix, "sent")
		ch <- prometheus.MustNewConstMetric(etcdConflictsDesc, prometheus.CounterValue, float64(s.Seen), prefix, "seen")
		ch <- prometheus.MustNewConstMetric(etcdReadsDesc, prometheus.CounterValue, float64(s.Barriers), prefix)
		return true
	})
}
