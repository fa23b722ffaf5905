# One command per chore. Every target sets the environment up first (./.venv).
# The venv is made from the system's Python 3.11+ where there is one. A root server's
# workers start as root and become an unprivileged user (nobody) once they have opened the
# directories they import from, so the checkout and its venv may sit in a private directory
# (/root, `mktemp -d`); but the standard library is best reachable by path too (tracebacks
# then show its source lines), which /usr/lib is and a Python under /root (pyenv) is not.
SYSTEM_PYTHON := $(shell /usr/bin/python3 -c 'import sys; print(sys.version_info >= (3, 11))' 2>/dev/null)
ifeq ($(SYSTEM_PYTHON),True)
PYTHON ?= /usr/bin/python3
else
PYTHON ?= python3
endif
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# make run APP=module:callable ARGS="--workers 2"
APP    ?= webgarden.demo:application
ARGS   ?=

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml scripts/bootstrap.py
	$(PYTHON) scripts/bootstrap.py $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/webgarden run $(APP) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench examples scripts
	$(VENV)/bin/mypy
	$(PY) scripts/import_cycles.py src/webgarden

# Side by side with nginx, uvicorn, granian and gunicorn (needs wrk, nginx, h2load and
# openssl): about 15 minutes. One suite alone:
# make bench SUITE=run|asgi|static|process_model|websocket|http2|tls ARGS="--rounds 5"
# (asgi is bench/run.py --suite asgi).
SUITE ?= run asgi static process_model websocket http2 tls
bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	for suite in $(SUITE); do \
	    case $$suite in asgi) cmd="bench/run.py --suite asgi";; *) cmd="bench/$$suite.py";; esac; \
	    $(PY) $$cmd $(ARGS) || exit 1; \
	done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
