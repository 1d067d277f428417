"""Tests of dataflow.base: the contract, the tensorpack interface, RNG seeding."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

from dataflow import (
    DataFlow,
    DataFlowReentrantGuard,
    ProxyDataFlow,
    ReentrancyError,
    RNGDataFlow,
    UnknownLengthError,
    check_dataflow,
)


class Count(DataFlow):
    def __init__(self, n):
        self.n = n
        self.closed = 0

    def __iter__(self):
        for i in range(self.n):
            yield [i]

    def __len__(self):
        return self.n

    def close(self):
        self.closed += 1


class Endless(DataFlow):
    def __iter__(self):
        i = 0
        while True:
            yield [i]
            i += 1


class OldStyle(DataFlow):
    """The tensorpack interface: get_data() and size() only."""

    def get_data(self):
        for i in range(4):
            yield [i]

    def size(self):
        return 4


class OldStyleUnknownSize(DataFlow):
    def get_data(self):
        yield [1]

    def size(self):
        raise NotImplementedError()


class Coin(RNGDataFlow):
    def __iter__(self):
        for _ in range(20):
            yield [int(self.rng.randint(1000))]

    def __len__(self):
        return 20


class TestDataFlow:
    def test_cannot_instantiate_without_iter(self):
        class Nothing(DataFlow):
            pass

        with pytest.raises(TypeError, match="abstract"):
            Nothing()

    def test_contract_of_a_simple_source(self):
        assert check_dataflow(lambda: Count(5)) == [[0], [1], [2], [3], [4]]

    def test_unknown_length_is_both_not_implemented_and_type_error(self):
        df = Endless()
        with pytest.raises(UnknownLengthError) as info:
            len(df)
        assert isinstance(info.value, NotImplementedError)
        assert isinstance(info.value, TypeError)
        assert "Endless does not know how many datapoints" in str(info.value)
        with pytest.raises(NotImplementedError):
            df.size()

    def test_list_works_when_length_unknown(self):
        class Three(DataFlow):
            def __iter__(self):
                return iter([[1], [2], [3]])

        assert list(Three()) == [[1], [2], [3]]

    def test_infinite_contract(self):
        check_dataflow(Endless, infinite=True, max_datapoints=50)

    def test_with_calls_close(self):
        df = Count(2)
        with df as entered:
            assert entered is df
        assert df.closed == 1

    def test_get_data_and_size_are_aliases(self):
        df = Count(3)
        assert list(df.get_data()) == [[0], [1], [2]]
        assert df.size() == 3


class TestTensorpackInterface:
    def test_get_data_only_subclass_iterates(self):
        df = OldStyle()
        assert list(df) == [[0], [1], [2], [3]]
        assert len(df) == 4
        check_dataflow(OldStyle)

    def test_size_raising_not_implemented_means_unknown_length(self):
        df = OldStyleUnknownSize()
        with pytest.raises(UnknownLengthError):
            len(df)
        assert list(df) == [[1]]
        check_dataflow(OldStyleUnknownSize)

    def test_get_data_override_in_proxy_subclass_wins(self):
        class Doubler(ProxyDataFlow):
            def get_data(self):
                for (x,) in self.ds.get_data():
                    yield [2 * x]

        df = Doubler(Count(3))
        df.reset_state()
        assert list(df) == [[0], [2], [4]]
        assert df.size() == 3

    def test_get_data_override_may_call_super_get_data(self):
        class Base(DataFlow):
            def __iter__(self):
                yield from ([i] for i in range(3))

        class Evens(Base):
            def get_data(self):
                for dp in super().get_data():
                    if dp[0] % 2 == 0:
                        yield dp

        assert list(Evens()) == [[0], [2]]
        assert list(Evens().get_data()) == [[0], [2]]

    def test_size_override_may_call_super_size(self):
        class Doubled(ProxyDataFlow):
            def get_data(self):
                for dp in super().get_data():
                    yield dp
                    yield dp

            def size(self):
                return super().size() * 2

        df = Doubled(Count(3))
        assert (len(df), df.size(), len(list(df))) == (6, 6, 6)
        check_dataflow(lambda: Doubled(Count(3)))

    def test_len_raising_not_implemented_means_unknown_length(self):
        class OldLen(DataFlow):
            def __iter__(self):
                yield from ([i] for i in range(3))

            def __len__(self):
                raise NotImplementedError("no idea")

        df = OldLen()
        with pytest.raises(UnknownLengthError, match="^no idea$"):
            len(df)
        assert list(df) == [[0], [1], [2]]
        check_dataflow(OldLen)

    def test_len_raising_not_implemented_in_a_wrapped_source(self):
        from dataflow import BatchData, JoinData

        class OldLen(DataFlow):
            def __iter__(self):
                yield from ([i] for i in range(4))

            def __len__(self):
                raise NotImplementedError

        df = BatchData(OldLen(), 2)
        df.reset_state()  # asks len(ds); tensorpack's BatchData caught NotImplementedError
        assert [b[0].tolist() for b in df] == [[0, 1], [2, 3]]
        df = JoinData([OldLen(), OldLen()])
        df.reset_state()
        assert len(list(df)) == 4

    def test_old_style_subclass_of_old_style_source(self):
        class Twice(OldStyle):
            def get_data(self):
                for dp in super().get_data():
                    yield dp + dp

        assert list(Twice())[:2] == [[0, 0], [1, 1]]


class TestProxyDataFlow:
    def test_forwards_everything(self):
        inner = Count(3)
        df = ProxyDataFlow(inner)
        df.reset_state()
        assert list(df) == [[0], [1], [2]]
        assert len(df) == 3
        df.close()
        assert inner.closed == 1
        check_dataflow(lambda: ProxyDataFlow(Count(3)))

    def test_rejects_a_list_with_a_hint(self):
        with pytest.raises(TypeError, match=r"ds must be a DataFlow, got list; wrap a list in"):
            ProxyDataFlow([[1], [2]])

    def test_rejects_non_iterable(self):
        with pytest.raises(TypeError, match=r"^ds must be a DataFlow, got int$"):
            ProxyDataFlow(3)


class TestRNGDataFlow:
    def test_rng_before_reset_state_is_a_clear_error(self):
        with pytest.raises(RuntimeError, match=r"Coin.rng does not exist before reset_state\(\)"):
            list(Coin())

    def test_same_seed_same_stream(self):
        a, b = Coin().set_seed(3), Coin().set_seed(3)
        a.reset_state()
        b.reset_state()
        assert list(a) == list(b)

    def test_seeded_reset_restarts_the_stream(self):
        a = Coin().set_seed(3)
        a.reset_state()
        first = list(a)
        a.reset_state()
        assert list(a) == first

    def test_unseeded_copies_differ(self):
        a, b = Coin(), Coin()
        a.reset_state()
        b.reset_state()
        assert list(a) != list(b)

    def test_different_seeds_differ(self):
        a, b = Coin().set_seed(1), Coin().set_seed(2)
        a.reset_state()
        b.reset_state()
        assert list(a) != list(b)

    @pytest.mark.parametrize(
        "bad, error", [(-1, ValueError), (1.5, TypeError), ("7", TypeError), (True, TypeError)]
    )
    def test_bad_seed(self, bad, error):
        with pytest.raises(error, match=r"^seed must be None or a non-negative int, got "):
            Coin().set_seed(bad)

    def test_accepts_numpy_int_seed(self):
        assert Coin().set_seed(np.int64(5)).seed == 5

    def test_picklable_before_reset(self):
        df = pickle.loads(pickle.dumps(Coin().set_seed(4)))
        df.reset_state()
        ref = Coin().set_seed(4)
        ref.reset_state()
        assert list(df) == list(ref)

    def test_contract(self):
        check_dataflow(Coin)


class TestDataFlowReentrantGuard:
    def test_nested_iteration_raises_with_advice(self):
        guard = DataFlowReentrantGuard("MySource")
        with guard:
            with pytest.raises(ReentrancyError, match=r"MySource is already being iterated"):
                guard.__enter__()
        with guard:  # released after the first block ended
            pass

    def test_other_thread_is_refused(self):
        guard = DataFlowReentrantGuard("MySource")
        errors = []

        def other():
            try:
                with guard:
                    pass
            except ReentrancyError as err:
                errors.append(err)

        with guard:
            t = threading.Thread(target=other)
            t.start()
            t.join(5)
        assert len(errors) == 1

    def test_picklable(self):
        guard = pickle.loads(pickle.dumps(DataFlowReentrantGuard("X")))
        with guard:
            pass


class TestCheckDataflow:
    @pytest.mark.parametrize(
        "kwargs, error, message",
        [
            ({"num_passes": 1}, ValueError, "num_passes must be an int >= 2, got 1"),
            ({"num_passes": 2.5}, TypeError, "num_passes must be an int >= 2, got 2.5"),
            ({"max_datapoints": 0}, ValueError, "max_datapoints must be a positive int, got 0"),
        ],
    )
    def test_rejects_bad_arguments(self, kwargs, error, message):
        with pytest.raises(error) as info:
            check_dataflow(lambda: Count(1), **kwargs)
        assert str(info.value) == message

    def test_detects_wrong_len(self):
        class Liar(Count):
            def __len__(self):
                return 7

        with pytest.raises(AssertionError, match="len\\(\\) is 7 but one pass yielded 2"):
            check_dataflow(lambda: Liar(2))

    def test_detects_single_pass_source(self):
        class Once(DataFlow):
            def __init__(self):
                self.it = iter([[1], [2]])

            def __iter__(self):
                return self.it

        with pytest.raises(AssertionError, match="different numbers of datapoints"):
            check_dataflow(Once)

    def test_detects_non_list_datapoint(self):
        class Bare(DataFlow):
            def __iter__(self):
                yield 5

        with pytest.raises(AssertionError, match="datapoint 0 is a int, not a list or dict"):
            check_dataflow(Bare)

    def test_detects_plain_not_implemented_len(self):
        class BadLen(Count):
            pass

        def bad_len(self):
            raise NotImplementedError

        BadLen.__len__ = bad_len  # set after the class was made, so base does not convert it
        with pytest.raises(AssertionError, match="not UnknownLengthError"):
            check_dataflow(lambda: BadLen(1))

    def test_detects_leaked_thread(self):
        stop = threading.Event()

        class Leaky(Count):
            def reset_state(self):
                self.t = threading.Thread(target=stop.wait, name="leaky")
                self.t.start()

        try:
            with pytest.raises(AssertionError, match="thread 'leaky'"):
                check_dataflow(lambda: Leaky(1))
        finally:
            stop.set()
