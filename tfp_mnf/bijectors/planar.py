"""The planar flow bijector (Rezende & Mohamed, 2015)."""

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import (
    dtype_util,
    parameter_properties,
    tensor_util,
)

__all__ = ["Planar"]


class Planar(tfp.bijectors.Bijector):
    """Planar flow `f(z) = z + u_hat tanh(w^T z + b)` on vectors (event_ndims = 1).

    Forward map and log-determinant (Rezende & Mohamed, 2015, eqs. 10-12):

    ```none
    f(z)          = z + u_hat tanh(w^T z + b)
    psi(z)        = (1 - tanh^2(w^T z + b)) w
    log|det df/dz| = log|1 + u_hat^T psi(z)|
    ```

    Invertibility constraint (paper, appendix A): `u` is mapped to

    ```none
    u_hat = u + (m(w^T u) - w^T u) w / ||w||^2,   m(a) = -1 + softplus(a),
    ```

    so that `w^T u_hat = m(w^T u) > -1` and `f` is a bijection for any `u`, `w`, `b`
    (`||w||^2` is floored at the dtype's tiny value, so `w = 0` gives the identity).

    Inverse: for `y = f(z)`, `alpha = w^T z` solves the scalar equation

    ```none
    g(alpha) = alpha + (w^T u_hat) tanh(alpha + b) - w^T y = 0,
    ```

    which is monotone (`g' = 1 + (w^T u_hat)(1 - tanh^2) >= 0`) and bracketed by
    `w^T y -+ |w^T u_hat|`. It is solved element-wise by Newton steps safeguarded with
    bisection (a Newton step is taken only if it stays strictly inside the bracket and at
    least halves the previous step) until the Newton step or the bracket is below a relative
    tolerance of a few ulps (at most `MAX_INVERSE_ITERATIONS` iterations); then
    `z = y - u_hat tanh(alpha + b)`.
    The solve runs without gradient; one final Newton step carries the implicit-function
    gradient, so `inverse` (and hence `TransformedDistribution.log_prob`) is differentiable
    and works for any input, not only cached samples of `forward`.

    `u` and `w` are vectors of the event size and `b` a scalar (no parameter batch shape).

    #### References

    [1]: Danilo Jimenez Rezende, Shakir Mohamed. Variational Inference with Normalizing
         Flows. ICML 2015. https://arxiv.org/abs/1505.05770
    """

    MAX_INVERSE_ITERATIONS = 200

    def __init__(
        self,
        u: tf.Tensor,
        w: tf.Tensor,
        b: tf.Tensor,
        validate_args: bool = False,
        name: str = "planar",
    ) -> None:
        """Creates a planar flow.

        Args:
          u: `[d]` float tensor or variable, unconstrained direction of the update.
          w: `[d]` float tensor or variable, the hyperplane normal.
          b: scalar float tensor or variable, the offset.
          validate_args: Python `bool`, whether to check arguments at run time.
          name: Python `str` name of the bijector.

        Raises:
          ValueError: if `u` or `w` is not a vector, their sizes differ, or `b` is not a
            scalar.
        """
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            dtype = dtype_util.common_dtype([u, w, b], dtype_hint=tf.float32)
            self._u = tensor_util.convert_nonref_to_tensor(u, dtype=dtype, name="u")
            self._w = tensor_util.convert_nonref_to_tensor(w, dtype=dtype, name="w")
            self._b = tensor_util.convert_nonref_to_tensor(b, dtype=dtype, name="b")
            for arg, value, rank in (("u", self._u, 1), ("w", self._w, 1), ("b", self._b, 0)):
                if value.shape.rank != rank:
                    raise ValueError(
                        f"`{arg}` must have rank {rank} (static), got shape {value.shape}."
                    )
            if not self._u.shape.is_compatible_with(self._w.shape):
                raise ValueError(
                    f"`u` and `w` must have the same size, got {self._u.shape} and {self._w.shape}."
                )
            super().__init__(
                forward_min_event_ndims=1,
                dtype=dtype,
                validate_args=validate_args,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype: tf.DType) -> dict:
        return {
            "u": parameter_properties.ParameterProperties(event_ndims=1),
            "w": parameter_properties.ParameterProperties(event_ndims=1),
            "b": parameter_properties.ParameterProperties(),
        }

    @property
    def u(self) -> tf.Tensor:
        """The unconstrained direction `u`."""
        return self._u

    @property
    def w(self) -> tf.Tensor:
        """The hyperplane normal `w`."""
        return self._w

    @property
    def b(self) -> tf.Tensor:
        """The offset `b`."""
        return self._b

    def _params(self) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """Returns `(u_hat, w, b, w^T u_hat)` with the invertibility constraint applied."""
        u = tf.convert_to_tensor(self._u)
        w = tf.convert_to_tensor(self._w)
        b = tf.convert_to_tensor(self._b)
        wu = tf.reduce_sum(w * u)
        w_norm_sq = tf.maximum(tf.reduce_sum(tf.square(w)), dtype_util.eps(w.dtype) ** 2)
        wu_hat = tf.math.softplus(wu) - 1.0  # m(w^T u), appendix A
        u_hat = u + (wu_hat - wu) * w / w_norm_sq
        return u_hat, w, b, wu_hat

    def _log_det(self, alpha: tf.Tensor, b: tf.Tensor, wu_hat: tf.Tensor) -> tf.Tensor:
        """`log|1 + u_hat^T psi(z)|` from `alpha = w^T z` (eq. 12)."""
        return tf.math.log(tf.abs(1.0 + (1.0 - tf.square(tf.tanh(alpha + b))) * wu_hat))

    def _solve_alpha(self, target: tf.Tensor, b: tf.Tensor, wu_hat: tf.Tensor) -> tf.Tensor:
        """Solves `alpha + wu_hat tanh(alpha + b) = target` element-wise."""
        tol = 4.0 * dtype_util.eps(target.dtype)
        tiny = dtype_util.eps(target.dtype) ** 2

        def residual(alpha: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            t = tf.tanh(alpha + b)
            return alpha + wu_hat * t - target, 1.0 + wu_hat * (1.0 - tf.square(t))

        def body(i, alpha, lo, hi, last_step, _):  # noqa: ANN001, ANN202
            g, dg = residual(alpha)
            lo = tf.where(g < 0.0, alpha, lo)
            hi = tf.where(g > 0.0, alpha, hi)
            newton_step = g / tf.maximum(dg, tiny)
            newton = alpha - newton_step
            # Newton only if it lands strictly inside the bracket and at least halves the
            # step (else it can cycle across the steep part of tanh); bisection otherwise.
            use_newton = (newton > lo) & (newton < hi) & (tf.abs(newton_step) <= 0.5 * last_step)
            new_alpha = tf.where(use_newton, newton, 0.5 * (lo + hi))
            small = tol * (1.0 + tf.abs(new_alpha))
            converged = tf.reduce_all(
                (g == 0.0) | (hi - lo <= small) | (use_newton & (tf.abs(newton_step) <= small))
            )
            return i + 1, new_alpha, lo, hi, tf.abs(new_alpha - alpha), converged

        def cond(i, alpha, lo, hi, last_step, done):  # noqa: ANN001, ANN202
            return (i < self.MAX_INVERSE_ITERATIONS) & tf.logical_not(done)

        target_sg = tf.stop_gradient(target)
        radius = tf.stop_gradient(tf.abs(wu_hat))
        lo, hi = target_sg - radius, target_sg + radius
        _, alpha, _, _, _, _ = tf.while_loop(
            cond, body, (tf.constant(0), target_sg, lo, hi, hi - lo, tf.constant(False))
        )
        alpha = tf.stop_gradient(alpha)
        g, dg = residual(alpha)
        return alpha - g / tf.maximum(dg, tiny)

    def _forward(self, x: tf.Tensor) -> tf.Tensor:
        u_hat, w, b, _ = self._params()
        return x + u_hat * tf.tanh(tf.reduce_sum(x * w, axis=-1, keepdims=True) + b)  # eq. 10

    def _inverse(self, y: tf.Tensor) -> tf.Tensor:
        u_hat, w, b, wu_hat = self._params()
        alpha = self._solve_alpha(tf.reduce_sum(y * w, axis=-1), b, wu_hat)
        return y - u_hat * tf.tanh(alpha + b)[..., tf.newaxis]

    def _forward_log_det_jacobian(self, x: tf.Tensor) -> tf.Tensor:
        _, w, b, wu_hat = self._params()
        return self._log_det(tf.reduce_sum(x * w, axis=-1), b, wu_hat)

    def _inverse_log_det_jacobian(self, y: tf.Tensor) -> tf.Tensor:
        _, w, b, wu_hat = self._params()
        alpha = self._solve_alpha(tf.reduce_sum(y * w, axis=-1), b, wu_hat)
        return -self._log_det(alpha, b, wu_hat)
