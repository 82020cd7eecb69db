"""Ablation of the two-layer node relaxation (results/ablation-deep.md): the same search with the
incumbent fixed at U, the conic McCormick relaxation against the per-unit one.

python results/ablation-deep.py models/deep-zigzag8.toml 0.10000001 600
"""
import numpy as np, time, sys
from milpland.instance.spec import load_spec, spec_from_dict
from milpland.search import deep_solve as ds
from milpland.search.deep_model import TwoLayerData
from milpland.search.deep_incumbents import DeepIncumbent, constant_net
from milpland.search.solve import solve_global
path, U, limit = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
spec=load_spec(path); data=TwoLayerData.of(spec)
for conic in (True, False):
    inc=DeepIncumbent(risk=U, net=constant_net(data), found_by="given")
    stats=ds.SearchStats(); t=time.time()
    lb,complete=ds.search(spec,data,inc,deadline=time.perf_counter()+limit,abs_tol=1e-9*data.baseline(),say=lambda m:None,stats=stats,options=ds.DeepOptions(conic=conic),one_hidden=solve_global)
    print("conic" if conic else "per-unit", "lower bound %.10g"%lb, "complete", complete, "nodes", stats.nodes, "s %.1f"%(time.time()-t), "splits pattern/knot/share", stats.pattern_splits, stats.knot_splits, stats.share_splits, flush=True)
