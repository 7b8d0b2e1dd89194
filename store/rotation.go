package store

import (
	"bytes"
	"errors"
	"time"
)

// Rotation is what rotating a refresh token writes, as PlanRotation
// decides it, for a store to apply in the transaction it read in.
type Rotation struct {
	// Presented is the presented token as it is after the rotation: the
	// answer of RotateRefreshToken.
	Presented RefreshToken
	// New is the token that replaces it, to insert.
	New RefreshToken
	// Updated are the tokens to overwrite: the one replaced and, on a
	// retry through the overlap, the presented one too.
	Updated []RefreshToken
}

// PlanRotation applies the rules of RotateRefreshToken to presented (read
// in the store's transaction): a token already rotated may be presented
// again only within overlap of its rotation, and then only while the token
// that replaced it (read with successor) is the current one; next must be
// of the same app and connection. Both stores call it, so that the rules
// are written once.
func PlanRotation(presented, next RefreshToken, now time.Time, overlap time.Duration, successor func(hash []byte) (RefreshToken, error)) (Rotation, error) {
	current := presented
	if !presented.RotatedAt.IsZero() {
		if overlap <= 0 || now.After(presented.RotatedAt.Add(overlap)) {
			return Rotation{}, ErrRefreshReused
		}
		var err error
		current, err = successor(presented.ReplacedBy)
		if errors.Is(err, ErrGrantNotFound) || err == nil && !current.RotatedAt.IsZero() {
			return Rotation{}, ErrRefreshReused
		}
		if err != nil {
			return Rotation{}, err
		}
	}
	if next.AppID != presented.AppID || next.ConnectionID != presented.ConnectionID {
		return Rotation{}, &InvalidError{Field: "refresh token", Reason: "must be of the app and connection of the token it replaces"}
	}
	if next.IssuedAt.IsZero() {
		next.IssuedAt = now
	}
	next.RotatedAt, next.ReplacedBy = time.Time{}, nil
	current.RotatedAt, current.ReplacedBy = now, bytes.Clone(next.Hash)
	if bytes.Equal(current.Hash, presented.Hash) {
		return Rotation{Presented: current, New: next, Updated: []RefreshToken{current}}, nil
	}
	// A retry through the overlap: the presented token now leads to the
	// new current one, so that it may be retried again within its overlap
	// (several workers of an app refreshing with the same token at once),
	// while its rotation time stays.
	presented.ReplacedBy = bytes.Clone(next.Hash)
	return Rotation{Presented: presented, New: next, Updated: []RefreshToken{presented, current}}, nil
}
