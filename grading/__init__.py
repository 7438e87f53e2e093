"""Autograding chapter 5 (``notebooks/05_exercises.ipynb``) for a whole class.

    python tools/grade.py SUBMISSIONS_DIR --out RESULTS_DIR     # or: make grade SUBMISSIONS=...

* ``sandbox`` -- runs one notebook in a bubblewrap sandbox (no host files, no network, no other
  process, time and output limits; everything it started dies with it);
* ``child`` -- what runs inside: the notebook (nbclient), then the probe that writes down what
  the exercises' functions return;
* ``exercises`` -- the exercises and their points; the probe (in the student's kernel) and the
  judge (the checkers on that data, in a process of the grader's own);
* ``tuning`` -- exercise 7's training, by the grader, and the measurements behind its margin;
* ``batch`` -- the batch: every notebook run and judged, then the CSV, the feedback and the report.

The instructor guide (``book/instructors.md``, "Grading a class") explains the workflow.
"""
