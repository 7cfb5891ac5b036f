"""Transform and Trainer module code: preprocessing_fn, Keras model, run_fn."""
