"""The ``bratsunet`` command line: the parser and its error handling (:mod:`.main`) and one module per command."""
