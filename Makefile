# The two commands of the README. Each installs what it needs on a fresh machine.
#   make demo   install smtpretry with the cli extra and run the demo against an embedded throttling server
#   make test   install the test tools (and the Debian packages the tests drive) and run every test

PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
# Debian packages that tests drive: Chromium renders the HTML log report; tests/mta runs a
# private Postfix instance (its own config and queue under a temporary directory); tests/redis
# start a private redis-server on a loopback port.
DEBIAN_PACKAGES ?= chromium postfix redis-server

.PHONY: demo test install install-test debian-packages

demo: install
	$(BIN)/smtpretry demo

test: install-test debian-packages
	$(BIN)/pytest

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
