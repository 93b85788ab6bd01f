"""Training a network: the epoch loop (:mod:`.loop`), the run's state and its resume (:mod:`.state`), the pieces
built from the config (:mod:`.setup`), samples and their random transforms (:mod:`.samples`,
:mod:`.augmentation`), cross-validation folds (:mod:`.folds`), several GPUs (:mod:`.distributed`), the training
log (:mod:`.log`), the names of the files in a work folder (:mod:`.files`) and the work folder's lock (:mod:`.lock`)."""
