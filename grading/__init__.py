"""Autograding chapter 5 (``notebooks/05_exercises.ipynb``) for a whole class, with otter-grader.

    python tools/grade.py SUBMISSIONS_DIR --out RESULTS_DIR     # or: make grade SUBMISSIONS=...

* ``exercises`` -- the exercises, their points, and what an autograder test does (runs the
  ``nin_utils.exercises`` checker on the student's function, with a time limit);
* ``sandbox`` -- runs one submission in its own process: as ``nobody``, in private mount, PID
  and network namespaces, with time and output limits (the grader's side);
* ``child`` -- what runs inside the sandbox: otter-grader's ``grade_submission`` on the notebook;
* ``batch`` -- the batch: build otter's autograder, grade every notebook, then (and only then)
  write the CSV, the feedback files and the report.

The instructor guide (``book/instructors.md``, "Grading a class") explains the workflow.
"""
