import numpy as np
import pytest

from py4dstem_compressed.bases.zernike import (
    orthonormalize_rows,
    osa_index_to_nm,
    radial_polynomial,
    zernike_polynomial,
)


def test_osa_ordering_table():
    expected = [(0, 0), (1, -1), (1, 1), (2, -2), (2, 0), (2, 2), (3, -3), (3, -1), (3, 1), (3, 3)]
    assert [osa_index_to_nm(j) for j in range(10)] == expected
    # first 36 = every order n <= 7, first 45 = every order n <= 8 (as Noll's first 36 / 45)
    assert {osa_index_to_nm(j)[0] for j in range(36)} == set(range(8))
    assert osa_index_to_nm(36)[0] == 8 and osa_index_to_nm(44) == (8, 8)
    for j in range(200):
        n, m = osa_index_to_nm(j)
        assert (n * (n + 2) + m) // 2 == j and abs(m) <= n and (n - m) % 2 == 0


@pytest.mark.parametrize(
    "n, m, closed_form",
    [
        (0, 0, lambda r: np.ones_like(r)),
        (1, 1, lambda r: r),
        (2, 0, lambda r: 2 * r**2 - 1),
        (2, 2, lambda r: r**2),
        (3, 1, lambda r: 3 * r**3 - 2 * r),
        (4, 0, lambda r: 6 * r**4 - 6 * r**2 + 1),
        (4, 2, lambda r: 4 * r**4 - 3 * r**2),
        (6, 0, lambda r: 20 * r**6 - 30 * r**4 + 12 * r**2 - 1),
    ],
)
def test_radial_polynomials_closed_forms(n, m, closed_form):
    rho = np.linspace(0, 1, 101)
    assert np.allclose(radial_polynomial(n, m, rho), closed_form(rho))
    assert np.allclose(radial_polynomial(n, -m, rho), closed_form(rho))


def test_zernike_values_closed_forms():
    rho = np.array([0.0, 0.3, 0.7, 1.0, 1.2])
    phi = np.array([0.1, 1.0, -2.0, 3.0, 0.0])
    inside = rho <= 1
    # Z_2^-2 = sqrt(6) rho^2 sin(2 phi); Z_3^1 = sqrt(8) (3 rho^3 - 2 rho) cos(phi)
    assert np.allclose(
        zernike_polynomial(2, -2, rho, phi), np.sqrt(6) * rho**2 * np.sin(2 * phi) * inside
    )
    expected = np.sqrt(8) * (3 * rho**3 - 2 * rho) * np.cos(phi) * inside
    assert np.allclose(zernike_polynomial(3, 1, rho, phi), expected)
    assert np.allclose(zernike_polynomial(0, 0, rho, phi), inside.astype(float))
    with pytest.raises(ValueError):
        zernike_polynomial(3, 2, rho, phi)


def test_continuous_orthonormality_on_fine_grid():
    # <Z_i, Z_j> over the unit disk = pi delta_ij with the N_n^m normalisation
    x = np.linspace(-1, 1, 801)
    dx = x[1] - x[0]
    xx, yy = np.meshgrid(x, x, indexing="ij")
    rho, phi = np.hypot(xx, yy), np.arctan2(yy, xx)
    z = np.stack([zernike_polynomial(*osa_index_to_nm(j), rho, phi).ravel() for j in range(15)])
    gram = z @ z.T * dx * dx / np.pi
    assert np.abs(gram - np.eye(15)).max() < 0.02


def naive_gram_schmidt(rows):
    out = []
    for v in rows.astype(float):
        w = v.copy()
        for u in out:
            w -= (u @ v) * u
        out.append(w / np.linalg.norm(w))
    return np.array(out)


def test_orthonormalize_rows_matches_naive_gram_schmidt(rng):
    a = rng.normal(size=(7, 40))
    rows, independent = orthonormalize_rows(a)
    assert independent.all()
    assert np.allclose(rows, naive_gram_schmidt(a), atol=1e-10)
    assert np.allclose(rows @ rows.T, np.eye(7), atol=1e-12)


def test_orthonormalize_rows_flags_dependent(rng):
    a = rng.normal(size=(4, 10))
    a = np.vstack([a, a[1] + 2 * a[3]])
    _, independent = orthonormalize_rows(a)
    assert independent.tolist() == [True, True, True, True, False]
