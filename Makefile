# The two commands of the README. Each installs what it needs on a fresh machine.
#   make demo   install smtpretry with the cli extra and run the demo against an embedded throttling server
#   make test   install the test tools (and the Debian packages the tests drive) and run every test,
#               once on each supported Python found (pyenv's, else on PATH), each in its own venv

PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
# The supported Pythons. `make test` runs the suite on each one found, in .venv-X.Y, and
# says which ran and which are missing; it fails when none is found or a run fails.
PYTHON_VERSIONS ?= 3.11 3.12 3.13
# Debian packages that tests drive: Chromium renders the HTML log report; tests/mta runs a
# private Postfix instance (its own config and queue under a temporary directory); tests/redis
# start a private redis-server on a loopback port.
DEBIAN_PACKAGES ?= chromium postfix redis-server

.PHONY: demo test install install-test debian-packages

demo: install
	$(BIN)/smtpretry demo

test: debian-packages
	@ran=""; failed=""; missing=""; \
	for v in $(PYTHON_VERSIONS); do \
	  py=$$(ls -d "$$HOME"/.pyenv/versions/$$v*/bin/python$$v 2>/dev/null | sort -V | tail -n 1); \
	  if [ -z "$$py" ] && python$$v -c "" >/dev/null 2>&1; then py=$$(command -v python$$v); fi; \
	  if [ -z "$$py" ]; then missing="$$missing $$v"; continue; fi; \
	  echo "== Python $$v: $$py, in .venv-$$v"; \
	  if $(MAKE) --no-print-directory install-test PYTHON="$$py" VENV=.venv-$$v && .venv-$$v/bin/pytest; \
	  then ran="$$ran $$v"; else failed="$$failed $$v"; fi; \
	done; \
	echo "tests passed on Python:$${ran:- none}; failed on:$${failed:- none}; missing:$${missing:- none}"; \
	if [ -z "$$ran$$failed" ]; then echo "no supported Python found ($(PYTHON_VERSIONS))"; exit 1; fi; \
	[ -z "$$failed" ]

install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[cli]'

install-test:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

debian-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  echo "postfix postfix/main_mailer_type select No configuration" | $$SUDO debconf-set-selections && \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	  case " $$missing " in *" postfix "*) \
	    if [ -d /run/systemd/system ]; then $$SUDO systemctl disable --now postfix.service >/dev/null 2>&1 || true; fi;; \
	  esac; \
	fi
