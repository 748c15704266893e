#!/usr/bin/env bash
# device: GPU smoke (background) + the whole GPU test suite + changed CPU test files under the device's software
set -u
echo "HEAD $1" >> $OUT/machine.txt
( OUT=$OUT DATA=../shared/data timeout 500 bash pipelines/gpu_cli_smoke.sh > $OUT/smoke_stdout.txt 2>&1; echo "smoke rc=$?" >> $OUT/smoke_stdout.txt ) &
( CUDA_VISIBLE_DEVICES= timeout 500 python -m pytest -q -p no:cacheprovider tests/test_train_units.py tests/test_variants.py tests/test_task_readers.py tests/test_generation_audit.py tests/test_fftconv.py tests/test_configs.py tests/test_hub_class_loader.py tests/test_step_kernels.py "tests/test_finetune.py::test_finetune_warns_when_evaluated_sequences_are_training_rows" "tests/test_pretrain.py::test_the_logged_training_loss_is_the_whole_steps_whatever_its_micro_batches" "tests/test_pretrain_leftovers.py::test_sigterm_during_validation_saves_when_it_ends_and_a_resume_matches_the_uninterrupted_run" > $OUT/cpu_tests.txt 2>&1; echo "cpu tests rc=$?" >> $OUT/cpu_tests.txt ) &
GENOMIX_TEST_GPU=1 timeout 400 python -m pytest -q tests -p no:cacheprovider --ignore=tests/test_notebooks.py > $OUT/gpu_pytest.txt 2>&1; echo "gpu pytest rc=$?" >> $OUT/gpu_pytest.txt
tail -3 $OUT/gpu_pytest.txt
wait
tail -2 $OUT/cpu_tests.txt
tail -1 $OUT/smoke_stdout.txt
cat $OUT/smoke/summary.txt 2>/dev/null
