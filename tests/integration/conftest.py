import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pytest

from pgcluster import Cluster, make_base, cleanup


@pytest.fixture(scope='session')
def pg_base():
    base = make_base()
    yield base
    cleanup(base)


@pytest.fixture(scope='session')
def publisher(pg_base):
    c = Cluster('publisher', pg_base).start()
    yield c
    c.stop('immediate')


@pytest.fixture(scope='session')
def subscriber(pg_base):
    c = Cluster('subscriber', pg_base).start()
    yield c
    c.stop('immediate')
