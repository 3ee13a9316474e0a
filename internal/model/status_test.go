package model_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/internal/model"
)

func TestTierConditions(t *testing.T) {
	c := cluster(t, anp("a", 10, from("Allow", "y")), anp("b", 10, from("Deny", "y")), anp("c", 20, from("Bogus", "y")))
	conds := c.TierConditions()
	get := func(key, typ string) metav1.Condition {
		for _, cond := range conds[key] {
			if cond.Type == typ {
				return cond
			}
		}
		t.Fatalf("%s has no %s condition", key, typ)
		return metav1.Condition{}
	}
	if got := get("AdminNetworkPolicy/a", model.ConditionUniquePriority); got.Status != metav1.ConditionFalse ||
		!strings.Contains(got.Message, "AdminNetworkPolicy/a, AdminNetworkPolicy/b") {
		t.Errorf("a shares priority 10 with b: %+v", got)
	}
	if got := get("AdminNetworkPolicy/c", model.ConditionUniquePriority); got.Status != metav1.ConditionTrue {
		t.Errorf("c has a priority of its own: %+v", got)
	}
	if got := get("AdminNetworkPolicy/c", model.ConditionValid); got.Status != metav1.ConditionFalse || !strings.Contains(got.Message, `unknown action "Bogus"`) {
		t.Errorf("c has an unknown action: %+v", got)
	}
	if got := get("AdminNetworkPolicy/a", model.ConditionValid); got.Status != metav1.ConditionTrue {
		t.Errorf("a is valid: %+v", got)
	}
}
