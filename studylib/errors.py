"""One exception type for every bad input the user can fix.

The CLI prints it as a single line (``studylib: error: ...``) and exits with status 2;
everything else is a bug and keeps its traceback.
"""


class StudyError(Exception):
    """Bad input: a file, field or parameter the user named or supplied."""
