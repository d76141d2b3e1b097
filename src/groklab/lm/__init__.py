"""The character language model, a plug-in (docs/protocol.md §7): here, what lies above the
store: ``groklab lm``'s run settings and depth-decay strategies, the summaries read from the
store, the model of a stored run (``groklab sample``) and the plain torch.nn reference. It
enters the core through its doors (docs/design.md, Plug-in doors): the text task's
registration (tasks/text.py: its check, the sample a finished run adds, language-model runs)
and the model's (models/gpt.py: the same check, the run sizes, ``groklab bench``'s reference
run); its report section is report/lm.py, its commands cli/lm.py."""
