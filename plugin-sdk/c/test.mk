# `make test` for an operator project: builds its unit tests natively (cc
# only, no Wasm) and runs them. A project's Makefile sets WORLD and SDK and
# includes this file; `sluice plugin build` builds the Wasm component.
WORLD ?= transform
CC ?= cc
CFLAGS ?= -O2 -g -Wall -Wextra
SOURCES := $(filter-out test.c test_%.c,$(wildcard *.c))
DEFS := $(if $(filter reduce,$(WORLD)),-DSLUICE_WORLD_REDUCE,-DSLUICE_WORLD_TRANSFORM)

.PHONY: test clean
test: build/test
	./build/test

build/test: test.c $(SOURCES) $(wildcard $(SDK)/*.c $(SDK)/*.h $(SDK)/*.inc)
	@mkdir -p build
	$(CC) $(CFLAGS) $(DEFS) -I$(SDK) -o $@ test.c $(SOURCES) $(SDK)/sluice.c

clean:
	rm -rf build
