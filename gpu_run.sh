export PYTHONPATH=. PYTHONUNBUFFERED=1
python -m pytest -q -p no:cacheprovider tests/test_cuda_graph.py tests/test_pretrain_cuda_graphs.py tests/test_host_checkpoint.py tests/test_implicit_filter_tf32.py tests/test_linear.py 2>&1 | tail -4
timeout 420 python kernels/gpu_check_scan.py --skip-sweep --out $OUT 2>&1 | tail -14
