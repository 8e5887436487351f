#!/bin/sh
# Slurm TaskProlog of the test cluster: records each task's GPU assignment, so that the tests can
# check which jobs got a GPU (one line per job step; the job user writes it).
echo "job=${SLURM_JOB_ID:-} step=${SLURM_STEP_ID:-} partition=${SLURM_JOB_PARTITION:-} cuda_visible_devices=${CUDA_VISIBLE_DEVICES:-unset}" >> "$(dirname "$0")/log/task_env.log"
