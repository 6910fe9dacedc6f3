/* AVX2 td_i8_dot32: one 32-byte block per ymm. vpmaddubsw multiplies
 * unsigned by signed bytes, so |q| goes in the unsigned operand and q's sign
 * moves onto k (vpsignb); pairs sum to at most 2*127*127 < 32767, so the
 * 16-bit step never saturates, and vpmaddwd widens to int32. Exact, like the
 * scalar reference. */
#include <immintrin.h>

#include "kernels/kernels_impl.h"

static inline int32_t hsum8(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_hadd_epi32(s, s);
    s = _mm_hadd_epi32(s, s);
    return _mm_cvtsi128_si32(s);
}

void td_i8_dot32_avx2(const int8_t *q, int nq, const int8_t *k, int d, int32_t *out)
{
    const __m256i ones = _mm256_set1_epi16(1);
    int nb = d / 32;
    for (int b = 0; b < nb; b++) {
        __m256i kb = _mm256_loadu_si256((const __m256i *)(k + b * 32));
        for (int h = 0; h < nq; h++) {
            __m256i qb = _mm256_loadu_si256((const __m256i *)(q + (size_t)h * d + b * 32));
            __m256i p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(qb), _mm256_sign_epi8(kb, qb));
            out[h * nb + b] = hsum8(_mm256_madd_epi16(p16, ones));
        }
    }
}
