"""Stage finetune: training recognizers on the dataset (train_ctc: the two-phase CTC/adapter trainer on the shared core in tala.training)."""
