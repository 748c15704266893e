#!/usr/bin/env bash
# device: GPU smoke (background) + the whole GPU test suite + changed CPU test files under the device's software
set -u
echo "HEAD $1" >> $OUT/machine.txt
( OUT=$OUT DATA=../shared/data timeout 500 bash pipelines/gpu_cli_smoke.sh > $OUT/smoke_stdout.txt 2>&1; echo "smoke rc=$?" >> $OUT/smoke_stdout.txt ) &
( CUDA_VISIBLE_DEVICES= timeout 500 python -m pytest -q -p no:cacheprovider tests/test_cli_edges.py tests/test_resize_tokens.py tests/test_python_api.py tests/test_recipe_ranges.py tests/test_finished_outputs.py tests/test_labelled_edge_cases.py tests/test_finetune_checks.py tests/test_generation_audit.py tests/test_train_units.py tests/test_pretrain_leftovers.py tests/test_task_suites.py > $OUT/cpu_tests.txt 2>&1; echo "cpu tests rc=$?" >> $OUT/cpu_tests.txt ) &
GENOMIX_TEST_GPU=1 timeout 400 python -m pytest -q tests -p no:cacheprovider --ignore=tests/test_notebooks.py > $OUT/gpu_pytest.txt 2>&1; echo "gpu pytest rc=$?" >> $OUT/gpu_pytest.txt
tail -3 $OUT/gpu_pytest.txt
wait
tail -2 $OUT/cpu_tests.txt
tail -1 $OUT/smoke_stdout.txt
cat $OUT/smoke/summary.txt 2>/dev/null
